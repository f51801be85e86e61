"""Calibration and validation of the roofline model on a real device (issue 4).

`roofline calibrate` microbenchmarks the device and writes a calibrated hardware profile;
`roofline validate` runs real decoder-only transformers and measures the error of every prediction: the
reference engine the roofline describes (`fast.py`, described for the prediction by `engine.py`) and the eager
HF baseline, apart. `device_run.sh` / `device_run.py` do all of it in one command on a lent GPU.
Importing this package imports no torch: torch is imported lazily where a benchmark or a model needs it.
"""
