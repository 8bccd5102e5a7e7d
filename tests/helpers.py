"""Small helpers shared by the model tests."""
import torch


def train_steps(model, data, *, epochs: int, batch_size: int = 32, lr: float = 3e-3,
                labels: bool = False, condition: str | None = None) -> list[float]:
    """Train ``model`` with Adam for whole epochs of ``data``; the loss of every step. ``labels``
    passes the batch's labels as ``y``; ``condition="captions"`` passes that batch field instead."""
    condition = condition or ("y" if labels else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        for batch in data.batches(batch_size, shuffle=True, epoch=epoch):
            loss = model.loss(batch["x"], y=batch[condition]) if condition else model.loss(batch["x"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def assert_loss_fell(losses: list[float], by: float = 20.0) -> float:
    """The mean of the last 10 losses is at least ``by`` below the first 10; returns that mean."""
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > last + by, (first, last)
    return last
