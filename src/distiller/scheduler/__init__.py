"""Compression scheduling: the object a training loop calls at six points of every epoch."""

from distiller.scheduler.compression_scheduler import CompressionScheduler, LossComponent, PolicyLoss

__all__ = ["CompressionScheduler", "LossComponent", "PolicyLoss"]
