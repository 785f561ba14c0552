"""The shipped deployment: docker-compose.yml checked by a Compose parser, deploy/nginx.conf
run as a process (Debian's nginx) in front of gateway replicas on loopback, and how fast a change
reaches every worker of those replicas."""
