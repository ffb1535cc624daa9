"""stub"""

EXAMPLES: list = []
