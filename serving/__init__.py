"""The exported model in use: in this process, behind TF Serving's REST API or our own server.

versions (which SavedModel a path means; loading and swapping versions), rest (TF Serving's
JSON), server (its HTTP), client (REST and gRPC clients), model (one interface over a local or
remote model), batching (TF Serving's request batching), images and boxes (inputs), detector,
blazeface and box_convention (the face detectors and their boxes mapped to the training
convention), aligner (the faces of one image), tracking and video (one face through a video),
litert (the LiteRT/TFLite model in use), errors (what callers can fix), fixtures (tiny models
for tests and benchmarks).
"""
