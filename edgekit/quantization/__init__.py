"""Quantization helpers shared by the int8 exporters: PyTorch layer names and the keep-float rescue."""
