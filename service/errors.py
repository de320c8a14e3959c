"""Exceptions raised by brokercast."""


class BrokercastError(Exception):
    """Base class of every error brokercast raises on purpose."""


class ConfigError(BrokercastError):
    """A setting is missing or invalid.

    The message names the key, the value and where it was set, so the command line
    can print it as one line and exit with code 2.
    """
