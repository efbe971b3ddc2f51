"""The example's app: its Django tasks (``tasks.py``) and the views that enqueue them."""
