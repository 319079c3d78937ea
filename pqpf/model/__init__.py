"""The networks: the residual U-Net (:mod:`pqpf.model.resunet`), its normalisation
layers (:mod:`pqpf.model.norms`) and its ordinal loss (:mod:`pqpf.model.loss`)."""
