"""Pusher whose new model versions appear atomically to TF Serving."""
