"""Training-data synthesis and trainers for the networks in ``dlsort.nn``."""
