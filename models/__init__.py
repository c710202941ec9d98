"""The showcase models: data, presets, and hand-written NumPy references (`models.reference`)."""
