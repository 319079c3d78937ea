"""Verification: scores (:mod:`pqpf.verify.scores`), reliability tables
(:mod:`pqpf.verify.reliability`), the streaming accumulator (:mod:`pqpf.verify.verifier`)
and the printed table (:mod:`pqpf.verify.table`)."""
