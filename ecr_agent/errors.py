"""Exceptions raised by ecr-agent.

Every message names the registry, file or key involved and never carries a secret.
"""

EX_CONFIG = 78  # sysexits.h: configuration error; the unit prevents restarts on it


class EcrAgentError(Exception):
    """Base class of every error that ecr-agent reports to the user."""


class ConfigError(EcrAgentError):
    """An invalid or unreadable configuration, with one line per problem."""

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration {self.path}:\n{lines}")


class TokenError(EcrAgentError):
    """A GetAuthorizationToken call or its response failed for one token request."""

    def __init__(self, source, cause):
        self.source = source
        self.cause = cause
        super().__init__(f"token request failed for {source}: {cause}")


class TargetError(EcrAgentError):
    """Publishing credentials to one target failed."""

    def __init__(self, target, cause):
        self.target = target
        super().__init__(f"{target}: {cause}")


class DockerConfigError(TargetError):
    """Reading or writing one Docker client config file failed."""

    def __init__(self, path, cause):
        self.path = str(path)
        super().__init__(f"Docker config {self.path}", cause)
