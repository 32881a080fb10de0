"""Plain ``nn.Module`` models built on torchseq's layers (no Lightning here; see :mod:`torchseq.tasks`)."""

from torchseq.models.autoencoder import Autoencoder, ConvDecoder, ConvEncoder, DenseDecoder, DenseEncoder
from torchseq.models.classifier import RecurrentClassifier, SequenceClassifier
from torchseq.models.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from torchseq.models.lstm_fcn import FCN, LSTMFCN, FullyConvolutionalEncoder, LSTMFCNEncoder
from torchseq.models.pooling import masked_mean, valid_steps
from torchseq.models.recurrent_encoder import RecurrentEncoder
from torchseq.models.sequence_autoencoder import SequenceAutoencoder
from torchseq.models.tagger import RecurrentTagger
from torchseq.models.vae import VAE

__all__ = [
    "FCN",
    "LSTMFCN",
    "VAE",
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DenseDecoder",
    "DenseEncoder",
    "FullyConvolutionalEncoder",
    "LSTMFCNEncoder",
    "MLPDiscriminator",
    "MLPGenerator",
    "RecurrentClassifier",
    "RecurrentEncoder",
    "RecurrentTagger",
    "SequenceAutoencoder",
    "SequenceClassifier",
    "masked_mean",
    "valid_steps",
]
