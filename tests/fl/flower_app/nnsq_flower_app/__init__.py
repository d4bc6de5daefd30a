"""Flower test app: an MLP on the digits with nnsqueeze-compressed uploads and broadcasts."""
