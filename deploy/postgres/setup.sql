-- One database for every coordinator of a cluster. Run as a superuser:
--   psql -f setup.sql -v password="'...'"
-- The coordinators create and migrate their tables themselves at start-up.
CREATE ROLE taskgrid LOGIN PASSWORD :password;
CREATE DATABASE taskgrid OWNER taskgrid;
