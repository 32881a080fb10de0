"""The chapter's Keras example models, layer for layer, as torchseq modules.

Each class is the book's ``tf.keras.models.Sequential`` with the same layers and Keras' defaults, so
its parameters are exactly those of Keras' ``model.summary()`` and :func:`load_keras_weights` fills
it from the Keras model. Two choices adapt them to training in PyTorch:

- ``input_size`` and ``num_outputs`` come first, the factory signature the torchseq tasks call
  (``model(input_size, num_outputs)``); their defaults are the book's shapes.
- The final ``Dense(…, activation="softmax")`` outputs logits by default (``output_activation=None``):
  the tasks' cross-entropy applies the softmax, the stable form of Keras' softmax followed by
  ``categorical_crossentropy``. ``output_activation="softmax"`` gives Keras' probabilities.

``forward(x, lengths=None)`` takes a padded batch's lengths where Keras takes a ``Masking`` layer.
The GAN networks of the chapter live in :mod:`torchseq.models.gan`.
"""

from __future__ import annotations

from torchseq.keras.layers import LSTM, Bidirectional, Dense, Sequential, SimpleRNN


class SimpleRNNClassifier(Sequential):
    """The chapter's first example::

        model = tf.keras.models.Sequential()
        model.add(tf.keras.layers.SimpleRNN(units=512, dropout=0.2, input_shape=(30, 12)))
        model.add(tf.keras.layers.Dense(5, activation='softmax'))
    """

    def __init__(
        self,
        input_size: int = 12,
        num_outputs: int = 5,
        units: int = 512,
        dropout: float = 0.2,
        output_activation: str | None = None,
    ) -> None:
        super().__init__(
            SimpleRNN(input_size, units, dropout=dropout),
            Dense(units, num_outputs, activation=output_activation),
        )


class LSTMClassifier(Sequential):
    """The chapter's LSTM example (``timesteps``, ``features`` and ``num_classes`` left open there)::

        model = tf.keras.models.Sequential()
        model.add(tf.keras.layers.LSTM(128, input_shape=(timesteps, features)))
        model.add(tf.keras.layers.Dense(num_classes, activation='softmax'))

    The defaults are the book's MNIST setting: 28 timesteps of 28 pixels, 10 classes.
    """

    def __init__(
        self,
        input_size: int = 28,
        num_outputs: int = 10,
        units: int = 128,
        output_activation: str | None = None,
    ) -> None:
        super().__init__(
            LSTM(input_size, units),
            Dense(units, num_outputs, activation=output_activation),
        )


class BiLSTMClassifier(Sequential):
    """The chapter's bidirectional LSTM example::

        model = tf.keras.models.Sequential()
        model.add(Bidirectional(LSTM(10, return_sequences=True), input_shape=(5, 10)))
        model.add(Bidirectional(LSTM(10)))
        model.add(Dense(5, activation='softmax'))
    """

    def __init__(
        self,
        input_size: int = 10,
        num_outputs: int = 5,
        units: int = 10,
        output_activation: str | None = None,
    ) -> None:
        super().__init__(
            Bidirectional(LSTM(input_size, units, return_sequences=True)),
            Bidirectional(LSTM(2 * units, units)),
            Dense(2 * units, num_outputs, activation=output_activation),
        )
