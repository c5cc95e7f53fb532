"""Unsafe settings: SSH server, weak passwords, password policy, OS and container baselines."""
