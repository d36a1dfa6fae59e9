"""The whole-slide viewer and annotator (pyramids drawn tile by tile, labels in chunks)."""
