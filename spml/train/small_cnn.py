"""spml's own small backbone for small images: four conv-BN-ReLU layers, each followed by 2x2 max pooling, then
global average pooling and a linear head (`fc`, like torchvision's resnets, so head finding, --weights and the
linear mode work unchanged).

Why it exists: from scratch on a few thousand small images, a ResNet-18 is mostly capacity it cannot fill;
this net trains in seconds per epoch on a CPU and reaches a higher mAP there, which is what the built-in demo
and the tests need. On real photos use a torchvision or timm backbone with pretrained weights."""

from __future__ import annotations

from torch import nn

SMALL_ARCHS = {"cnn4": (32, 64, 128, 256)}  # name -> channels of the four conv layers


class SmallCNN(nn.Module):
    def __init__(self, channels=(64, 128, 256, 512), num_classes: int = 1000):
        super().__init__()
        layers, c_in = [], 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def small_cnn(arch: str, num_classes: int) -> SmallCNN:
    return SmallCNN(SMALL_ARCHS[arch], num_classes)
