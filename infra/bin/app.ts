/** `cdk synth` / `cdk deploy` entry (cdk.json). Settings: infra/config.ts and infra/README.md. */
import { App } from 'aws-cdk-lib';
import { buildHangar } from '../hangar.ts';

buildHangar(new App());
