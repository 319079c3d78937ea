"""Verification: scores (:mod:`pqpf.verify.scores`), reliability tables
(:mod:`pqpf.verify.reliability`), the streaming accumulator (:mod:`pqpf.verify.verifier`)
the printed tables (:mod:`pqpf.verify.report`), and FSS, bootstrap intervals, area weights
and ensemble scores (:mod:`~pqpf.verify.fss`, :mod:`~pqpf.verify.bootstrap`, :mod:`~pqpf.verify.area`,
:mod:`~pqpf.verify.ensemble`)."""
