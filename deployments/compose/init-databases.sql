-- One Postgres, one database per service.
CREATE DATABASE lakefs;
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
