module tmpfs-secrets.local/echo-webhook

go 1.26.0
