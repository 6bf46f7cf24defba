"""The fatigue backend's own modules: face landmarks, their geometry, and per-stream fatigue state."""
