"""Cloudwatch: metrics of hosts and instances, alarms and scaling data."""
