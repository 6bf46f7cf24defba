"""The launcher behind ``list``/``status``/``start``/``stop``: what is installed, what runs, what fits."""
