"""Cluster mode: partitioned collectors on a RabbitMQ cluster (README, "Scaling out").

Only this package imports the AMQP client (``aio_pika``).
"""
