"""Facial expression recognition: Haar face detection and fer's mini-Xception ported to numpy."""
