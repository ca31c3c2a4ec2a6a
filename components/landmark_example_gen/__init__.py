"""ExampleGen for annotated face datasets (300-W layout, Menpo LJSON, COCO JSON)."""
