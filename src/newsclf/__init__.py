"""newsclf: fine-tune BERT on news topics, export to ONNX with proven parity, classify fast."""

__version__ = "0.1.0"
