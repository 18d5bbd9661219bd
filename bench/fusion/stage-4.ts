/** Stage 4 of the fusion bench chain. */
import { benchStage } from './stage.js';

export default benchStage(4);
