"""Exports for serving (SavedModel, Keras, TFLite, ONNX) and their verification."""
