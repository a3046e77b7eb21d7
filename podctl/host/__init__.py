"""The host podctl runs on: process limits and the service manager."""
