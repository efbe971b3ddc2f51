"""Runnable examples; ``examples.tasks`` holds the task functions they enqueue."""
