"""Figures: probability maps, GRAF and MRMS side by side, patch samples, reliability."""
