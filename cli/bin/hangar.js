#!/usr/bin/env node
// The `hangar` command: loads the TypeScript entry through tsx (a runtime dependency), nothing else.
import { register } from 'tsx/esm/api';

register();
await import('../main.ts');
