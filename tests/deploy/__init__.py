"""The shipped deployment: docker-compose.yml checked by a Compose parser, and deploy/nginx.conf
run as a process (Debian's nginx) in front of gateway replicas on loopback."""
