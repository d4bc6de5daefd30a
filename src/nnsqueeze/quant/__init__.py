"""Quantization of weights to integer levels."""

from nnsqueeze.quant.uniform import dequantize, qp_to_step, quantize, step_to_qp

__all__ = ["dequantize", "qp_to_step", "quantize", "step_to_qp"]
