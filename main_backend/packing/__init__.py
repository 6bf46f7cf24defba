"""Offline bundles: ``pack`` a backend with its wheels and model files, ``unpack`` it with no network."""
