"""EEG drowsiness analysis: input checks, filtering, band powers, artifacts, trends and sleep staging.

Imported as ``eeg_drowsiness`` by the backend's ``main.py`` (run from its folder) and as
``model_backends.eeg_backend.eeg_drowsiness`` by the tests; modules use relative imports so
both work.
"""
