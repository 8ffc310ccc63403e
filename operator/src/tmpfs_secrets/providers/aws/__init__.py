"""AWS providers: Secrets Manager and Parameter Store over boto3, with credentials per store."""
