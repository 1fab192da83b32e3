"""The Django project that hosts whichever eduCloud roles this machine is configured to run."""
