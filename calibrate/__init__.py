"""Calibration and validation of the roofline model on a real device (issue 4).

`roofline calibrate` microbenchmarks the device and writes a calibrated hardware profile;
`roofline validate` runs real decoder-only transformers and measures the error of every prediction.
Importing this package imports no torch: torch is imported lazily where a benchmark or a model needs it.
"""
