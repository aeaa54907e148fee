"""The one error of the crypto package."""


class CryptoError(ValueError):
    """Bad key, PEM, signature encoding or ciphertext."""
