"""Admission webhooks: volumes and mounts for opted-in pods, validation of ExternalSecrets and stores.

The decisions (`pods`, `objects`) are pure functions of the admitted object and the operator's
watch-fed index; `server` serves them over HTTPS. Nothing here imports kopf or makes a request.
"""
