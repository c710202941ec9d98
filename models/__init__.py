"""The showcase models: data, presets, and hand-written NumPy references
(`minigrad.models.reference`)."""
