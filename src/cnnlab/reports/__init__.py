"""Reports for people: the MLP-vs-CNN comparison, the demo, explanation figures."""
