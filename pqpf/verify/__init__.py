"""Verification of probabilistic and ensemble forecasts against MRMS."""
