"""Training: a generic loop (:mod:`pqpf.train.loop`) that model families plug into
(:mod:`pqpf.train.family`; the U-Net's is :mod:`pqpf.train.resunet`), with its batches,
distribution over processes and learning-rate schedules."""
