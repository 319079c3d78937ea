"""Verification against MRMS: scores, accumulators and their uncertainty.

Pure modules (arrays in, numbers out; no file I/O, no configuration):

* :mod:`pqpf.verify.fss`: fractions skill score over neighbourhood sizes, streamed.
* :mod:`pqpf.verify.neighbourhood`: box sums and means over valid points (summed-area tables).
* :mod:`pqpf.verify.bootstrap`: block-bootstrap confidence intervals of skill scores.
* :mod:`pqpf.verify.area`: true cell-area weights from the grid's map factor.
* :mod:`pqpf.verify.brier`: Brier score decomposition with the within-bin terms.
* :mod:`pqpf.verify.report`: the printed tables and CSV rows of the above.
"""
