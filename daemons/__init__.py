"""The long-running processes of each role (heartbeats, queue consumers, sweepers) and their entry points."""
