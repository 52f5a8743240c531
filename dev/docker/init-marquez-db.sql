-- Marquez keeps its metadata in its own database on the same Postgres server as Airflow.
CREATE USER marquez WITH PASSWORD 'marquez';
CREATE DATABASE marquez OWNER marquez;
