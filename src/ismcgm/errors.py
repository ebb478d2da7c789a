"""The project's input error: one line naming the galaxy, the file and the fix."""


class InputError(ValueError):
    """Bad input: the message is one line naming the galaxy, the file and the fix."""

    def __init__(self, galaxy, path, problem, fix):
        self.galaxy, self.path, self.problem, self.fix = galaxy, path, problem, fix
        where = f"galaxy {galaxy}" if galaxy else "input"
        super().__init__(f"{where}: {path}: {problem} -- fix: {fix}")
