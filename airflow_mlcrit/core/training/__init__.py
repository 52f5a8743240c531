"""Fine-tuning of pretrained models: LoRA (peft) or full, sequence classification first."""
