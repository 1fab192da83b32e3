"""Browser tests: a headless Chromium drives the admin console and the student portal of a real all-in-one host."""
